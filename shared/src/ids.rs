//! Identifiers as validated newtypes: a value of one of these types is always well formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} may only contain a-z, 0-9, '-' and '_' and must start with a letter or digit")]
    BadCharacter { kind: &'static str },
    #[error("{kind} must not contain control characters or surrounding whitespace")]
    BadText { kind: &'static str },
}

/// A slug: lower-case ASCII letters, digits, `-` and `_`, starting with a letter or digit.
fn validate_slug(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(IdError::BadCharacter { kind })
    }
}

/// Free text used as a key (article numbers): non-empty, bounded, no control characters and
/// no leading or trailing whitespace.
fn validate_text(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(IdError::BadText { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $validate:ident, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $validate($kind, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A merchant: everything the relay keeps belongs to exactly one tenant.
    TenantId,
    "tenant id",
    validate_slug,
    64
);
id_type!(
    /// One shop of a tenant (a market, a brand, a platform); appears in webhook URLs.
    ShopId,
    "shop id",
    validate_slug,
    64
);
id_type!(
    /// An installed agent; the subject of its token.
    AgentId,
    "agent id",
    validate_slug,
    64
);
id_type!(
    /// The article number that identifies a product or variant in both the shop and Mamut.
    ArticleNumber,
    "article number",
    validate_text,
    100
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lower_case_digits_dash_and_underscore() {
        assert!(TenantId::new("acme-ab_2").is_ok());
        assert_eq!(ShopId::new(""), Err(IdError::Empty { kind: "shop id" }));
        assert!(matches!(
            TenantId::new("Acme"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            TenantId::new("-acme"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            TenantId::new("a".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn article_numbers_are_bounded_text() {
        assert!(ArticleNumber::new("TSHIRT-RED-M").is_ok());
        assert!(ArticleNumber::new("Åre 12/3").is_ok());
        assert!(matches!(
            ArticleNumber::new(" A"),
            Err(IdError::BadText { .. })
        ));
        assert!(matches!(
            ArticleNumber::new("A\n"),
            Err(IdError::BadText { .. })
        ));
    }

    #[test]
    fn ids_are_validated_when_deserialized() {
        let bad: Result<ShopId, _> = serde_json::from_str("\"NOT OK\"");
        assert!(bad.is_err());
        let good: ShopId = serde_json::from_str("\"demo-se\"").expect("valid shop id");
        assert_eq!(good.as_str(), "demo-se");
    }
}
