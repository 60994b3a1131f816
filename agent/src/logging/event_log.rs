//! What goes to the Event Log, and as what text: every WARN and ERROR event and the INFO
//! events marked with [`EVENT_LOG_FIELD`], as one line (the message, then the fields as
//! `key=value`), and at most once per [`EVENT_LOG_REPEAT`] for one call site ([`Throttle`]).
//! The Windows layer that writes them is `crate::windows::eventlog`; this part is portable.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level};

/// An INFO event with this field set to `true` also goes to the Event Log.
pub const EVENT_LOG_FIELD: &str = "event_log";
/// The same event (call site) goes to the Event Log at most once in this time.
pub const EVENT_LOG_REPEAT: Duration = Duration::from_secs(5 * 60);
/// The longest text of one Event Log entry (ReportEventW allows 31,839 characters a string).
const MAX_EVENT_TEXT: usize = 31_000;

/// The level and the one-line text of an event that goes to the Event Log (see the module
/// doc), or `None`. The text is the message, then the other fields as `key=value`
/// (the [`EVENT_LOG_FIELD`] mark left out).
pub fn event_log_text(event: &Event<'_>) -> Option<(Level, String)> {
    let level = *event.metadata().level();
    let mut text = EventText::default();
    event.record(&mut text);
    let wanted =
        level == Level::ERROR || level == Level::WARN || (level == Level::INFO && text.marked);
    wanted.then(|| (level, text.finish()))
}

/// Holds back repeats of an event in the Event Log: one entry per call site per
/// [`EVENT_LOG_REPEAT`]; the next entry after a quiet spell says how many were held back.
#[derive(Debug, Default)]
pub struct Throttle {
    seen: Mutex<HashMap<Identifier, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    written: Instant,
    held_back: u32,
}

impl Throttle {
    /// `text` as it goes to the Event Log now, or `None` when it is held back.
    pub fn admit(&self, callsite: Identifier, now: Instant, text: String) -> Option<String> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match seen.get_mut(&callsite) {
            Some(last) if now.duration_since(last.written) < EVENT_LOG_REPEAT => {
                last.held_back = last.held_back.saturating_add(1);
                None
            }
            Some(last) => {
                let held_back = last.held_back;
                *last = Seen {
                    written: now,
                    held_back: 0,
                };
                Some(if held_back == 0 {
                    text
                } else {
                    format!(
                        "{text} ({held_back} more like this since the last entry are in the log file only)"
                    )
                })
            }
            None => {
                seen.insert(
                    callsite,
                    Seen {
                        written: now,
                        held_back: 0,
                    },
                );
                Some(text)
            }
        }
    }
}

/// Collects an event's message and fields into one line.
#[derive(Debug, Default)]
struct EventText {
    message: String,
    fields: String,
    marked: bool,
}

impl EventText {
    fn finish(self) -> String {
        let mut text = self.message;
        if !self.fields.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&self.fields);
        }
        if text.len() > MAX_EVENT_TEXT {
            let mut end = MAX_EVENT_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(" [cut]");
        }
        text
    }

    fn field(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{name}={value}");
    }
}

impl Visit for EventText {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == EVENT_LOG_FIELD {
            self.marked = value;
        } else {
            self.field(field.name(), format_args!("{value}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.field(field.name(), format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.field(field.name(), format_args!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Subscriber;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry};

    use super::*;
    use crate::logging::build;
    use crate::logging::tests::file_options;

    /// Records what [`event_log_text`] picks, as the Event Log layer does.
    #[derive(Clone, Default)]
    struct Picked(Arc<Mutex<Vec<(Level, String)>>>);

    impl<S: Subscriber> Layer<S> for Picked {
        fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if let Some(picked) = event_log_text(event) {
                self.0.lock().unwrap().push(picked);
            }
        }
    }

    #[test]
    fn warnings_errors_and_marked_info_go_to_the_event_log_with_their_fields() {
        let picked = Picked::default();
        let dir = tempfile::tempdir().unwrap();
        let (subscriber, _guard) = build(
            &file_options(dir.path()),
            EnvFilter::new("info"),
            Some(Box::new(picked.clone())),
        )
        .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("routine");
            tracing::info!(event_log = true, name = "MamutAgent", "service started");
            tracing::warn!(attempt = 2, error = %"refused", "session failed");
            tracing::error!("agent failed: mapping");
        });
        let picked = picked.0.lock().unwrap().clone();
        assert_eq!(
            picked,
            vec![
                (Level::INFO, "service started name=MamutAgent".to_owned()),
                (
                    Level::WARN,
                    "session failed attempt=2 error=refused".to_owned()
                ),
                (Level::ERROR, "agent failed: mapping".to_owned()),
            ]
        );
    }

    /// The call sites of two different events, for the throttle.
    fn two_callsites() -> (Identifier, Identifier) {
        #[derive(Clone, Default)]
        struct Sites(Arc<Mutex<Vec<Identifier>>>);
        impl<S: Subscriber> Layer<S> for Sites {
            fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
                self.0.lock().unwrap().push(event.metadata().callsite());
            }
        }
        let sites = Sites::default();
        let subscriber = Registry::default().with(sites.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("one");
            tracing::warn!("two");
        });
        let sites = sites.0.lock().unwrap();
        (sites[0].clone(), sites[1].clone())
    }

    #[test]
    fn a_repeated_warning_goes_to_the_event_log_once_per_interval_with_the_count_held_back() {
        let (a, b) = two_callsites();
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let admit = |site: &Identifier, after: Duration| {
            throttle.admit(site.clone(), t0 + after, "session failed".to_owned())
        };
        assert_eq!(admit(&a, Duration::ZERO).as_deref(), Some("session failed"));
        assert_eq!(admit(&a, Duration::from_secs(10)), None);
        assert_eq!(admit(&a, Duration::from_secs(20)), None);
        assert_eq!(
            admit(&b, Duration::from_secs(30)).as_deref(),
            Some("session failed"),
            "another event is not held back"
        );
        assert_eq!(
            admit(&a, EVENT_LOG_REPEAT).as_deref(),
            Some("session failed (2 more like this since the last entry are in the log file only)")
        );
        assert_eq!(admit(&a, EVENT_LOG_REPEAT + Duration::from_secs(1)), None);
    }

    #[test]
    fn an_overlong_event_text_is_cut_on_a_character_boundary() {
        let text = EventText {
            message: "é".repeat(MAX_EVENT_TEXT),
            ..EventText::default()
        }
        .finish();
        assert!(text.ends_with(" [cut]"));
        assert!(text.len() <= MAX_EVENT_TEXT + " [cut]".len());
    }
}
