//! `[mamut.import]`: how the agent runs Mamut's own import program (Mamut Import/Export) and
//! what it writes into the GBAOX10 file besides the order itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::Deserialize;
use shared::ids::ShopId;

use crate::config::{ConfigError, TooLong};

/// The settings of `[mamut.import]`, used when `[mamut] writer = "import"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// `Mamut ImportExport.exe` (the program Mamut installs with Mamut Import/Export).
    pub program: PathBuf,
    /// The company database's number as Mamut shows it, e.g. `001`.
    pub client: String,
    /// The Mamut user id the import runs as (the program's fifth parameter).
    pub user_id: String,
    /// The program's fourth parameter; Mamut ignores it for orders but requires it.
    pub compare_key: String,
    /// Where the agent writes the files it imports (and keeps refused ones).
    pub spool_dir: PathBuf,
    /// The longest one run of the program may take (seconds).
    pub timeout_secs: u64,
    /// The external order number Mamut keeps for an order: `{order_id}` (the shop's order id)
    /// and optionally `{shop_id}`.
    pub external_no: String,
    /// The one shop this Mamut client takes orders from, when `external_no` has no `{shop_id}`.
    pub shop_id: Option<String>,
    /// DATA15, the department (1 = none).
    pub department: u32,
    /// DATA14, the project; none when left out.
    pub project: Option<u32>,
    /// EMPID, our reference (employee number).
    pub employee: Option<u32>,
    /// DATA9, the response type.
    pub response_type: Option<u32>,
    /// The warehouse number of every line; the product's when left out.
    pub warehouse: Option<u32>,
    /// DATA4 by the shop's payment method.
    pub payment_terms: BTreeMap<String, u32>,
    /// DATA2 by the shop's shipping method.
    pub delivery_types: BTreeMap<String, u32>,
    /// The VAT code by VAT rate in percent (`"25" = 3`); 0 (the product's code) when absent.
    pub vat_codes: BTreeMap<String, u32>,
    /// Product number of the shipping line; a free-text line when left out.
    pub shipping_article: Option<String>,
    /// The currency of this Mamut client; orders in another currency are refused.
    pub currency: String,
    /// A text longer than the format allows.
    pub on_too_long: TooLong,
    /// Per field, as `ORDER.TAG` or `ORDERLINE.TAG`.
    pub on_too_long_fields: BTreeMap<String, TooLong>,
    /// Tag names that differ from the ones the agent writes, as `"ORDER.EXTERNALID" =
    /// "EXTORDERNO"` (several tag names are not legible in Mamut's documentation; an order
    /// exported from Mamut in GBAOX10 shows the installation's).
    pub tags: BTreeMap<String, String>,
    /// Further tags written empty at the end of every `<ORDER>` / `<ORDERLINE>` (the
    /// documentation says every tag must be present, and lists two whose names are not legible).
    pub extra_order_tags: Vec<String>,
    pub extra_line_tags: Vec<String>,
    /// A file the program writes its log to, read after a run that failed.
    pub log_file: Option<PathBuf>,
    /// Test hook: wait this long after the import, before acknowledging (milliseconds).
    pub after_import_delay_ms: u64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::new(),
            client: "001".to_owned(),
            user_id: "1".to_owned(),
            compare_key: "1".to_owned(),
            spool_dir: "spool".into(),
            timeout_secs: 300,
            external_no: "{order_id}".to_owned(),
            shop_id: None,
            department: 1,
            project: None,
            employee: None,
            response_type: None,
            warehouse: None,
            payment_terms: BTreeMap::new(),
            delivery_types: BTreeMap::new(),
            vat_codes: BTreeMap::new(),
            shipping_article: None,
            currency: "SEK".to_owned(),
            on_too_long: TooLong::Refuse,
            on_too_long_fields: BTreeMap::new(),
            tags: BTreeMap::new(),
            extra_order_tags: Vec::new(),
            extra_line_tags: Vec::new(),
            log_file: None,
            after_import_delay_ms: 0,
        }
    }
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(&format!("mamut.import.{key}"), message)
}

impl ImportConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.program.as_os_str().is_empty() {
            return Err(error(
                "program",
                "is required with writer = \"import\": the path of Mamut ImportExport.exe, e.g. \
                 'C:\\Program Files (x86)\\Mamut\\Mamut ImportExport.exe'",
            ));
        }
        if self.client.len() != 3 || !self.client.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(
                "client",
                format!(
                    "{:?} is not a company database number: three digits as Mamut shows them, \
                     e.g. \"001\"",
                    self.client
                ),
            ));
        }
        for (key, value) in [
            ("user_id", &self.user_id),
            ("compare_key", &self.compare_key),
        ] {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error(key, format!("{value:?} must be a number")));
            }
        }
        if self.spool_dir.as_os_str().is_empty() {
            return Err(error("spool_dir", "must not be empty"));
        }
        if !(1..=3600).contains(&self.timeout_secs) {
            return Err(error("timeout_secs", "must be between 1 and 3600"));
        }
        let template = ExternalNo::parse(&self.external_no, self.shop_id.as_deref())
            .map_err(|e| error("external_no", e))?;
        if template.fixed_shop.is_none() && self.shop_id.is_some() {
            return Err(error(
                "shop_id",
                "is only used when external_no has no {shop_id}; remove one of the two",
            ));
        }
        if self.department == 0 {
            return Err(error(
                "department",
                "must be a department number; 1 means none (Mamut refuses a blank department)",
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(error(
                "currency",
                format!("{:?} is not a currency code such as SEK", self.currency),
            ));
        }
        for rate in self.vat_codes.keys() {
            if rate.parse::<Decimal>().is_err() {
                return Err(error(
                    "vat_codes",
                    format!("{rate:?} is not a VAT rate in percent, e.g. \"25\""),
                ));
            }
        }
        if let Some(article) = &self.shipping_article
            && article.trim().is_empty()
        {
            return Err(error("shipping_article", "must not be blank; leave it out"));
        }
        for field in self.on_too_long_fields.keys() {
            if !super::gbaox10::TEXT_TAGS.contains(&field.as_str()) {
                return Err(error(
                    "on_too_long_fields",
                    format!(
                        "{field:?} is not a text field of the format; one of {}",
                        super::gbaox10::TEXT_TAGS.join(", ")
                    ),
                ));
            }
        }
        let tag_name = |t: &str| {
            !t.is_empty()
                && t.len() <= 40
                && t.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && t.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        };
        for (field, tag) in &self.tags {
            if !super::gbaox10::ALL_TAGS.contains(&field.as_str()) {
                return Err(error(
                    "tags",
                    format!(
                        "{field:?} is not a field of the format; one of {}",
                        super::gbaox10::ALL_TAGS.join(", ")
                    ),
                ));
            }
            if !tag_name(tag) {
                return Err(error(
                    "tags",
                    format!("{tag:?} ({field}) is not a tag name: upper case letters, digits, _"),
                ));
            }
        }
        for (key, tags) in [
            ("extra_order_tags", &self.extra_order_tags),
            ("extra_line_tags", &self.extra_line_tags),
        ] {
            if let Some(bad) = tags.iter().find(|t| !tag_name(t)) {
                return Err(error(
                    key,
                    format!("{bad:?} is not a tag name: upper case letters, digits, _"),
                ));
            }
        }
        Ok(())
    }

    /// The tag written for a field (`ORDER.TAG`), renamed by `tags`.
    pub fn tag<'a>(&'a self, element: &str, tag: &'a str) -> &'a str {
        self.tags
            .get(&format!("{element}.{tag}"))
            .map_or(tag, String::as_str)
    }

    /// The external number template (valid after [`ImportConfig::validate`]).
    pub fn external(&self) -> Result<ExternalNo, String> {
        ExternalNo::parse(&self.external_no, self.shop_id.as_deref())
    }

    pub fn too_long(&self, field: &str) -> TooLong {
        self.on_too_long_fields
            .get(field)
            .copied()
            .unwrap_or(self.on_too_long)
    }
}

/// The external order number Mamut keeps for each imported order, and the way back from it to
/// the shop and the shop's order id (for order status changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalNo {
    /// The literal text before, between and after the placeholders.
    parts: Vec<Piece>,
    /// The shop when the template does not name one.
    pub fixed_shop: Option<ShopId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Shop,
    Order,
}

impl ExternalNo {
    pub fn parse(template: &str, shop: Option<&str>) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                parts.push(Piece::Text(rest[..start].to_owned()));
            }
            let Some(end) = rest[start..].find('}') else {
                return Err(format!("{template:?} has a {{ without }}"));
            };
            parts.push(match &rest[start..start + end + 1] {
                "{shop_id}" => Piece::Shop,
                "{order_id}" => Piece::Order,
                other => {
                    return Err(format!(
                        "{other} is not a placeholder; use {{order_id}} and {{shop_id}}"
                    ));
                }
            });
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Piece::Text(rest.to_owned()));
        }
        if parts
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.contains('}')))
        {
            return Err(format!("{template:?} has a }} without {{"));
        }
        let count = |piece: &Piece| parts.iter().filter(|p| *p == piece).count();
        if count(&Piece::Order) != 1 || count(&Piece::Shop) > 1 {
            return Err(format!(
                "{template:?} must contain {{order_id}} once (and {{shop_id}} at most once)"
            ));
        }
        let placeholders: Vec<usize> = (0..parts.len())
            .filter(|&i| !matches!(parts[i], Piece::Text(_)))
            .collect();
        if placeholders.windows(2).any(|w| w[1] == w[0] + 1) {
            return Err(format!(
                "{template:?}: put a separator such as \":\" between {{shop_id}} and {{order_id}}, \
                 or the shop could not be told from the order id"
            ));
        }
        // The text after {shop_id} must hold a character no shop id has, or where the shop id
        // ends could not be told.
        let slug = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if let Some(i) = parts.iter().position(|p| *p == Piece::Shop)
            && let Some(Piece::Text(after)) = parts.get(i + 1)
            && after.chars().all(slug)
        {
            return Err(format!(
                "{template:?}: {after:?} after {{shop_id}} could be part of a shop id; separate \
                 with a character a shop id never has, such as \":\" or \"/\""
            ));
        }
        let fixed_shop = if count(&Piece::Shop) == 0 {
            let Some(shop) = shop else {
                return Err(format!(
                    "{template:?} does not name the shop: add {{shop_id}} (e.g. \
                     \"{{shop_id}}:{{order_id}}\"), or set mamut.import.shop_id to the one shop \
                     this Mamut client takes orders from"
                ));
            };
            Some(ShopId::new(shop).map_err(|e| format!("mamut.import.shop_id: {e}"))?)
        } else {
            None
        };
        Ok(Self { parts, fixed_shop })
    }

    /// The external number of a shop's order, or why this client takes no orders of that shop.
    pub fn render(&self, shop: &ShopId, order_id: &str) -> Result<String, String> {
        if let Some(fixed) = &self.fixed_shop
            && fixed != shop
        {
            return Err(format!(
                "this agent imports the orders of shop {fixed} only (mamut.import.shop_id), and \
                 this order is from shop {shop}: add {{shop_id}} to mamut.import.external_no to \
                 take orders of several shops"
            ));
        }
        let external: String = self
            .parts
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Shop => shop.as_str(),
                Piece::Order => order_id,
            })
            .collect();
        // One external number for one shop order, and back: else two orders could share one
        // (the second acknowledged with the first's number) or a status change go astray.
        if self.shop_order(&external) != Some((shop.clone(), order_id.to_owned())) {
            return Err(format!(
                "the external order number {external:?} of shop {shop}'s order {order_id:?} \
                 cannot be read back (the order id holds text of mamut.import.external_no): \
                 choose a template whose separators never appear in order ids"
            ));
        }
        Ok(external)
    }

    /// The shop and the shop's order id of an external number this template made.
    pub fn shop_order(&self, external: &str) -> Option<(ShopId, String)> {
        let mut rest = external;
        let mut shop = self.fixed_shop.clone();
        let mut order = None;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Piece::Text(t) => rest = rest.strip_prefix(t.as_str())?,
                Piece::Shop | Piece::Order => {
                    // A placeholder runs to the next literal (or to the end).
                    let end = match self.parts.get(i + 1) {
                        Some(Piece::Text(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    let value = &rest[..end];
                    if value.is_empty() {
                        return None;
                    }
                    if *part == Piece::Shop {
                        shop = Some(ShopId::new(value).ok()?);
                    } else {
                        order = Some(value.to_owned());
                    }
                    rest = &rest[end..];
                }
            }
        }
        if !rest.is_empty() {
            return None;
        }
        Some((shop?, order?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(s: &str) -> ShopId {
        ShopId::new(s).expect("shop id")
    }

    #[test]
    fn an_external_number_goes_there_and_back_with_or_without_the_shop() {
        let both = ExternalNo::parse("{shop_id}:{order_id}", None).expect("template");
        let ext = both.render(&shop("shop-se"), "100:234").expect("render");
        assert_eq!(ext, "shop-se:100:234");
        assert_eq!(
            both.shop_order(&ext),
            Some((shop("shop-se"), "100:234".to_owned()))
        );
        assert_eq!(both.shop_order("no-separator"), None);

        let single = ExternalNo::parse("WEB-{order_id}", Some("shop-se")).expect("template");
        assert_eq!(
            single.render(&shop("shop-se"), "100234").as_deref(),
            Ok("WEB-100234")
        );
        let other = single.render(&shop("shop-no"), "1").unwrap_err();
        assert!(other.contains("shop shop-se only"), "{other}");
        assert_eq!(
            single.shop_order("WEB-100234"),
            Some((shop("shop-se"), "100234".to_owned()))
        );
        assert_eq!(single.shop_order("100234"), None);

        // An order id holding the text after {order_id} would not read back: refused.
        let suffix = ExternalNo::parse("{order_id}@{shop_id}", None).expect("template");
        assert_eq!(
            suffix.render(&shop("shop-se"), "7").as_deref(),
            Ok("7@shop-se")
        );
        let e = suffix.render(&shop("shop-se"), "a@b").unwrap_err();
        assert!(e.contains("cannot be read back"), "{e}");
    }

    #[test]
    fn templates_that_could_not_be_read_back_are_refused() {
        for (template, shop, expect) in [
            ("{order_id}", None, "does not name the shop"),
            ("{shop_id}{order_id}", None, "separator"),
            ("{shop_id}-{order_id}", None, "could be part of a shop id"),
            ("{shop_id}", None, "{order_id} once"),
            ("{order_id}-{order_id}", Some("s"), "{order_id} once"),
            ("{order}", Some("s"), "not a placeholder"),
            ("{order_id", Some("s"), "without }"),
            ("x}{order_id}", Some("s"), "without {"),
            ("{order_id}", Some("Not A Slug"), "shop_id"),
        ] {
            let e = ExternalNo::parse(template, shop).unwrap_err();
            assert!(e.contains(expect), "{template}: {e}");
        }
    }
}
