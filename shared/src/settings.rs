//! Pieces both binaries' configuration uses: a secret that never prints, and errors that name
//! the setting they are about.

use serde::Deserialize;

/// A secret string (token, password) whose `Debug` prints nothing of it.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration error naming its key (`relay.url`, `RELAY_LISTEN`, a file's path).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses the value of setting `key`; the error quotes the value and names the key.
pub fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::new(key, format!("{value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print_and_errors_name_their_key() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
        let error = parse::<u16>("RELAY_PORT", "eighty").expect_err("not a number");
        assert_eq!(error.key, "RELAY_PORT");
        assert!(
            error.to_string().starts_with("RELAY_PORT: \"eighty\""),
            "{error}"
        );
    }
}
