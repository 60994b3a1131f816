//! `[mamut.import]`: how the agent runs Mamut's own import program (Mamut Import/Export) and
//! what it writes into the GBAOX10 file besides the order itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::external::ExternalNo;
use shared::settings::ConfigError;

use crate::mamut::settings::TooLong;
use rust_decimal::Decimal;
use serde::Deserialize;

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
