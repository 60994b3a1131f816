//! The console's words, from Fluent catalogues (`relay/locales/<language>/*.ftl`) that a
//! translator fills in: one file per area, the same messages in every language. A message a
//! language lacks falls back to English, and one English lacks shows its id, so a gap in a
//! catalogue is visible but never breaks a page.

use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use unic_langid::LanguageIdentifier;

use crate::accounts::Language;

/// Every catalogue file of a language, by area.
macro_rules! catalogue {
    ($lang:literal) => {
        [
            (
                concat!($lang, "/core.ftl"),
                include_str!(concat!("../../locales/", $lang, "/core.ftl")),
            ),
            (
                concat!($lang, "/accounts.ftl"),
                include_str!(concat!("../../locales/", $lang, "/accounts.ftl")),
            ),
            (
                concat!($lang, "/views.ftl"),
                include_str!(concat!("../../locales/", $lang, "/views.ftl")),
            ),
            (
                concat!($lang, "/actions.ftl"),
                include_str!(concat!("../../locales/", $lang, "/actions.ftl")),
            ),
            (
                concat!($lang, "/alerts.ftl"),
                include_str!(concat!("../../locales/", $lang, "/alerts.ftl")),
            ),
        ]
    };
}

const EN: [(&str, &str); 5] = catalogue!("en");
const SV: [(&str, &str); 5] = catalogue!("sv");

fn sources(language: Language) -> &'static [(&'static str, &'static str); 5] {
    match language {
        Language::En => &EN,
        Language::Sv => &SV,
    }
}

type Bundle = FluentBundle<FluentResource>;

/// The bundle of each language, in [`Language::ALL`]'s order. The catalogues are part of the
/// binary and checked by the tests below, so one that does not parse is a build defect: its
/// broken entries are left out (and logged) rather than stopping the relay.
static BUNDLES: LazyLock<Vec<Bundle>> =
    LazyLock::new(|| Language::ALL.iter().map(|l| bundle(*l)).collect());

fn bundle(language: Language) -> Bundle {
    let id: LanguageIdentifier = language.as_str().parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // Plain text in HTML: no Unicode isolation marks around placeables.
    bundle.set_use_isolating(false);
    for (file, source) in sources(language) {
        let resource = match FluentResource::try_new((*source).to_owned()) {
            Ok(resource) => resource,
            Err((resource, errors)) => {
                tracing::error!(file, ?errors, "a console catalogue does not parse");
                resource
            }
        };
        if let Err(errors) = bundle.add_resource(resource) {
            tracing::error!(file, ?errors, "a console catalogue repeats a message");
        }
    }
    bundle
}

fn bundle_of(language: Language) -> &'static Bundle {
    let index = Language::ALL
        .iter()
        .position(|l| *l == language)
        .unwrap_or(0);
    &BUNDLES[index]
}

/// The message `id` in `language`.
pub fn t(language: Language, id: &str) -> String {
    format(language, id, None)
}

/// The message `id` in `language` with its arguments, e.g.
/// `t_args(lang, "signed-in-as", &[("user", name.into()), ("role", role.into())])`.
pub fn t_args(language: Language, id: &str, args: &[(&str, ArgValue)]) -> String {
    let mut fluent = FluentArgs::new();
    for (name, value) in args {
        match value {
            ArgValue::Text(text) => fluent.set(*name, text.clone()),
            ArgValue::Number(n) => fluent.set(*name, *n),
        }
    }
    format(language, id, Some(&fluent))
}

/// An argument of a message.
#[derive(Debug, Clone)]
pub enum ArgValue {
    Text(String),
    Number(f64),
}

impl From<&str> for ArgValue {
    fn from(s: &str) -> Self {
        ArgValue::Text(s.to_owned())
    }
}

impl From<String> for ArgValue {
    fn from(s: String) -> Self {
        ArgValue::Text(s)
    }
}

impl From<i64> for ArgValue {
    fn from(n: i64) -> Self {
        ArgValue::Number(n as f64)
    }
}

impl From<u64> for ArgValue {
    fn from(n: u64) -> Self {
        ArgValue::Number(n as f64)
    }
}

fn format(language: Language, id: &str, args: Option<&FluentArgs>) -> String {
    for bundle in [bundle_of(language), bundle_of(Language::En)] {
        if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            let text = bundle.format_pattern(pattern, args, &mut errors);
            if !errors.is_empty() {
                tracing::warn!(id, ?errors, "a console message did not format cleanly");
            }
            return text.into_owned();
        }
    }
    id.to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use fluent_syntax::ast::Entry;

    use super::*;

    /// The message ids of a language, per file, failing on a file that does not parse.
    fn ids(language: Language) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for (file, source) in sources(language) {
            let resource = fluent_syntax::parser::parse(*source)
                .unwrap_or_else(|(_, errors)| panic!("{file} does not parse: {errors:?}"));
            for entry in resource.body {
                if let Entry::Message(message) = entry {
                    assert!(
                        ids.insert(message.id.name.to_owned()),
                        "{file} repeats {}",
                        message.id.name
                    );
                }
            }
        }
        ids
    }

    #[test]
    fn every_catalogue_parses_and_every_language_has_the_same_messages() {
        let english = ids(Language::En);
        assert!(english.contains("nav-overview"));
        for language in Language::ALL {
            let theirs = ids(language);
            let missing: Vec<_> = english.difference(&theirs).collect();
            let extra: Vec<_> = theirs.difference(&english).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{}: missing {missing:?}, not in English {extra:?}",
                language.as_str()
            );
        }
    }

    #[test]
    fn messages_are_translated_formatted_and_fall_back_to_their_id() {
        assert_eq!(t(Language::En, "nav-orders"), "Orders");
        assert_eq!(t(Language::Sv, "nav-orders"), "Ordrar");
        let line = t_args(
            Language::Sv,
            "signed-in-as",
            &[("user", "anna".into()), ("role", "operatör".into())],
        );
        assert_eq!(line, "Inloggad som anna (operatör)");
        assert_eq!(t(Language::Sv, "no-such-message"), "no-such-message");
    }
}
