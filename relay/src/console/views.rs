//! What the read views (overview, orders, audit) share: times and ages as the console
//! shows them, state labels, and bodies cut to a size a page can carry.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::i18n::{t, t_args};
use crate::accounts::Language;

/// A point in time, to the second, in UTC.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A `<time>` element for `at`.
pub fn time_cell(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (time(at)) } }
}

/// How long ago `at` was (or how long something has waited), in the largest whole unit.
pub fn age(language: Language, now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    duration(language, (now - at).num_seconds().max(0))
}

/// A duration in whole seconds, minutes, hours or days.
pub fn duration(language: Language, seconds: i64) -> String {
    let (id, n) = match seconds {
        s if s < 120 => ("view-duration-seconds", s),
        s if s < 2 * 3600 => ("view-duration-minutes", s / 60),
        s if s < 2 * 86_400 => ("view-duration-hours", s / 3600),
        s => ("view-duration-days", s / 86_400),
    };
    t_args(language, id, &[("n", n.into())])
}

/// An event's or a dispatch row's state, in words, with its colour class.
pub fn state_badge(language: Language, state: &str) -> Markup {
    html! {
        span class=(format!("state-{state}")) { (t(language, &format!("view-state-{state}"))) }
    }
}

/// Most characters of a body shown on a page.
pub const MAX_BODY_CHARS: usize = 64 * 1024;

/// A stored body for display: JSON re-indented (keys kept in the order received), cut at
/// [`MAX_BODY_CHARS`] with a note saying so. Maud escapes it where it is put.
pub fn body_block(language: Language, body: &str) -> Markup {
    let total = body.chars().count();
    let (shown, note) = if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
        let (laid_out, cut) = indent_json(body, MAX_BODY_CHARS);
        (laid_out, cut.then_some("view-body-truncated-json"))
    } else {
        let cut = total > MAX_BODY_CHARS;
        let shown = body.chars().take(MAX_BODY_CHARS).collect();
        (shown, cut.then_some("view-body-truncated"))
    };
    html! {
        pre { (shown) }
        @if let Some(note) = note {
            p.muted {
                (t_args(language, note, &[
                    ("shown", (MAX_BODY_CHARS as u64).into()),
                    ("total", (total as u64).into()),
                ]))
            }
        }
    }
}

/// Text being laid out, kept to at most `max` characters.
struct Bounded {
    text: String,
    chars: usize,
    max: usize,
}

impl Bounded {
    fn full(&self) -> bool {
        self.chars >= self.max
    }

    fn push(&mut self, c: char) {
        if !self.full() {
            self.text.push(c);
            self.chars += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.push(c));
    }

    /// A new line indented two spaces a level, cut like the rest.
    fn newline(&mut self, depth: usize) {
        self.push('\n');
        let spaces = depth.saturating_mul(2).min(self.max - self.chars);
        self.text.extend(std::iter::repeat_n(' ', spaces));
        self.chars += spaces;
    }
}

/// Valid JSON text laid out two spaces a level, its keys and values exactly as written, at
/// most `max` characters of it; whether it was cut. Stops reading once `max` is reached, so
/// a deeply nested body costs no more than `max` characters of work and memory.
fn indent_json(json: &str, max: usize) -> (String, bool) {
    let mut out = Bounded {
        text: String::with_capacity(json.len().min(max)),
        chars: 0,
        max,
    };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = json.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if out.full() {
            return (out.text, true);
        }
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    out.newline(depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                out.newline(depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                out.newline(depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    // Everything fitted unless the last character filled it with more still to come.
    (out.text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(duration(Language::En, 5), "5 s");
        assert_eq!(duration(Language::En, 600), "10 min");
        assert_eq!(duration(Language::En, 3 * 3600), "3 h");
        assert_eq!(duration(Language::Sv, 3 * 86_400), "3 dygn");
    }

    #[test]
    fn json_is_laid_out_with_its_keys_in_the_order_received() {
        let (laid_out, cut) = indent_json(
            r#"{"z":1, "a":{"s":"x,\\\"{y}"},"e":[],"l":[1,2]}"#,
            MAX_BODY_CHARS,
        );
        assert!(!cut);
        assert_eq!(
            laid_out,
            "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"x,\\\\\\\"{y}\"\n  },\n  \"e\": [],\n  \"l\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn a_large_body_is_cut_with_a_note_and_json_is_pretty_printed() {
        let big = "x".repeat(MAX_BODY_CHARS + 10);
        let html = body_block(Language::En, &big).into_string();
        assert!(html.contains("first 65536 of 65546"), "{html}");
        let json = body_block(Language::En, r#"{"a":"<b>"}"#).into_string();
        assert!(
            json.contains("&quot;a&quot;: &quot;&lt;b&gt;&quot;"),
            "{json}"
        );
    }

    #[test]
    fn a_deeply_nested_body_is_laid_out_only_up_to_the_limit() {
        // 100 levels deep with 20,000 values at the bottom: laid out in full it would be
        // over 4 million characters.
        let depth = 100;
        let values = vec!["1"; 20_000].join(",");
        let body = format!("{}{values}{}", "[".repeat(depth), "]".repeat(depth));
        let (laid_out, cut) = indent_json(&body, MAX_BODY_CHARS);
        assert!(cut);
        assert_eq!(laid_out.chars().count(), MAX_BODY_CHARS);
        let html = body_block(Language::En, &body).into_string();
        assert!(html.contains("65536"), "{}", &html[html.len() - 300..]);
    }
}
