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

/// A JSON error without the values it quotes: serde writes `invalid type: string "…"` or
/// ``unknown variant `…` ``, and the value may be a webhook secret or an API key sent in the
/// wrong place. What stays: where (the field's path, line and column) and what kind of problem;
/// the name of a missing field (one of ours) too.
pub fn without_values(text: &str) -> String {
    let position = text
        .rfind(" at line ")
        .map(|at| &text[at..])
        .filter(|tail| {
            tail.trim_start_matches(" at line ")
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or("");
    let body = &text[..text.len() - position.len()];
    let cut = match body.find(['"', '`']) {
        Some(at) if body[..at].ends_with("missing field ") => body[at + 1..]
            .find('`')
            .map_or(at, |close| at + 1 + close + 1),
        Some(at) => at,
        None => body.len(),
    };
    let kept = body[..cut].trim_end_matches([' ', ':', ',']);
    format!("{kept}{position}")
}

/// A TOML parse error as a message that does not quote the file: the parser's `message`, where
/// it quotes a value (`invalid type: string "…"`) without the value, at the line and column of
/// `span` in `text`. The parser's own rendering shows the offending line, which may hold a
/// password or a token (a misspelt `databse_url = "postgres://relay:pw@…"`).
pub fn toml_error(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    let message = message.trim();
    let quotes_a_value = [
        "invalid type",
        "invalid value",
        "unknown variant",
        "invalid length",
    ]
    .iter()
    .any(|kind| message.contains(kind));
    let message = if quotes_a_value {
        without_values(message)
    } else {
        message.to_owned()
    };
    let Some(before) = span.and_then(|span| text.get(..span.start)) else {
        return message;
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
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

    #[test]
    fn json_errors_keep_where_and_what_but_no_value() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for (text, expect) in [
            (
                format!(
                    "Failed to deserialize the JSON body into the target type: webhook_secrets: \
                     invalid type: string \"{secret}\", expected a sequence at line 1 column 50"
                ),
                "Failed to deserialize the JSON body into the target type: webhook_secrets: \
                 invalid type: string at line 1 column 50",
            ),
            (
                format!("document_type: unknown variant `{secret}`, expected `order` or `invoice`"),
                "document_type: unknown variant",
            ),
            (
                format!("secret: invalid type: string \"a\\\"{secret}\" at line 2 column 9"),
                "secret: invalid type: string at line 2 column 9",
            ),
            (
                "missing field `shop_id` at line 1 column 2".to_owned(),
                "missing field `shop_id` at line 1 column 2",
            ),
            (
                "ttl_days: invalid value: integer `99999`, expected u32".to_owned(),
                "ttl_days: invalid value: integer",
            ),
        ] {
            let out = without_values(&text);
            assert_eq!(out, expect, "{text}");
            assert!(!out.contains("MfKQ9r8G"));
        }
    }

    #[test]
    fn toml_errors_give_the_position_and_never_the_line() {
        let text =
            "listen = \"0.0.0.0:8080\"\ndatabse_url = \"postgres://relay:hunter2@db/relay\"\n";
        let at = text.find("databse_url").expect("key");
        let out = toml_error(
            text,
            "unknown field `databse_url`, expected one of `listen`, `database_url`",
            Some(at..at + 11),
        );
        assert_eq!(
            out,
            "line 2, column 1: unknown field `databse_url`, expected one of `listen`, `database_url`"
        );
        let out = toml_error(
            text,
            "invalid type: string \"hunter2\", expected u64",
            Some(0..1),
        );
        assert_eq!(out, "line 1, column 1: invalid type: string");
        assert!(!toml_error(text, "expected `=`", Some(999..1000)).contains("hunter2"));
    }
}
