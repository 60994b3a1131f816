//! Where the agent's logs go: stderr (text, or JSON lines) for `agent run` in a console, or a
//! rolling file (`<dir>/agent.<YYYY-MM-DD>.log`, a new file a day at midnight UTC, the date
//! in UTC as tracing-appender names it, the last [`KEEP_FILES`] kept) for the Windows service and `agent run --log-dir`; plus an optional
//! extra layer, the Windows Event Log in service mode.
//!
//! `RUST_LOG` filters the stderr/file output (default `info`). The extra layer filters itself.
//!
//! What goes to the Event Log ([`event_log_text`]): every WARN and ERROR event, and the INFO
//! events marked with the field [`EVENT_LOG_FIELD`] (`tracing::info!(event_log = true, ...)`),
//! which the service uses for "service started" and "service stopped" only. The Event Log is
//! what an administrator looks at first; routine INFO stays in the file. A warning that repeats
//! (e.g. "session failed; reconnecting" while the relay is unreachable) is written there at most
//! once per [`EVENT_LOG_REPEAT`] ([`Throttle`]); every occurrence stays in the file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{InitError, RollingFileAppender, Rotation};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Log files kept in the log directory (one a day: two weeks).
pub const KEEP_FILES: usize = 14;
/// Log files are named `agent.<date>.log`, the date (`YYYY-MM-DD`) in UTC.
pub const FILE_PREFIX: &str = "agent";
pub const FILE_SUFFIX: &str = "log";
/// An INFO event with this field set to `true` also goes to the Event Log.
pub const EVENT_LOG_FIELD: &str = "event_log";
/// The same event (call site) goes to the Event Log at most once in this time.
pub const EVENT_LOG_REPEAT: Duration = Duration::from_secs(5 * 60);
/// The longest text of one Event Log entry (ReportEventW allows 31,839 characters a string).
const MAX_EVENT_TEXT: usize = 31_000;

/// A layer added next to the stderr/file output (the Event Log layer on Windows).
pub type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber [`build`] makes.
pub type LogSubscriber = Layered<Vec<ExtraLayer>, Registry>;

/// Where the log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stderr,
    /// A rolling file in this directory (created when missing).
    Dir(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub output: Output,
    /// JSON lines instead of text.
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "cannot create the log directory {}: {source}; create it or let the agent's account write to it",
        dir.display()
    )]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open a log file in {}: {source}; let the agent's account write to that directory",
        dir.display()
    )]
    OpenFile { dir: PathBuf, source: InitError },
    #[error("logging was already set up in this process")]
    AlreadySet,
}

/// Keeps the file writer's background thread; dropping it flushes what is buffered. Hold it
/// until the process ends.
#[must_use = "dropping the guard stops writing the log file"]
#[derive(Debug)]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Sets the process-wide subscriber: `options`' output filtered by `RUST_LOG` (default
/// `info`), plus `extra`.
pub fn init(options: &Options, extra: Option<ExtraLayer>) -> Result<LogGuard, LoggingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (subscriber, guard) = build(options, filter, extra)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadySet)?;
    Ok(guard)
}

/// The subscriber [`init`] installs, without installing it (tests use it with
/// `tracing::subscriber::with_default`).
pub fn build(
    options: &Options,
    filter: EnvFilter,
    extra: Option<ExtraLayer>,
) -> Result<(LogSubscriber, LogGuard), LoggingError> {
    let (writer, file_guard, ansi) = match &options.output {
        Output::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            None,
            std::io::stderr().is_terminal(),
        ),
        Output::Dir(dir) => {
            let appender = rolling_file(dir)?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (BoxMakeWriter::new(writer), Some(guard), false)
        }
    };
    let output = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let output: ExtraLayer = if options.json {
        Box::new(output.json().with_filter(filter))
    } else {
        Box::new(output.with_filter(filter))
    };
    let layers: Vec<ExtraLayer> = std::iter::once(output).chain(extra).collect();
    let subscriber = Registry::default().with(layers);
    Ok((subscriber, LogGuard { _file: file_guard }))
}

/// The daily rolling file in `dir`: `agent.<date>.log` (UTC date, a new file at midnight UTC),
/// the last [`KEEP_FILES`] kept.
fn rolling_file(dir: &Path) -> Result<RollingFileAppender, LoggingError> {
    std::fs::create_dir_all(dir).map_err(|source| LoggingError::CreateDir {
        dir: dir.to_owned(),
        source,
    })?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix(FILE_SUFFIX)
        .max_log_files(KEEP_FILES)
        .build(dir)
        .map_err(|source| LoggingError::OpenFile {
            dir: dir.to_owned(),
            source,
        })
}

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

    use super::*;

    fn file_options(dir: &Path) -> Options {
        Options {
            output: Output::Dir(dir.to_owned()),
            json: false,
        }
    }

    fn log_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    #[test]
    fn a_logged_line_lands_in_the_daily_file_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let (subscriber, guard) =
            build(&file_options(&logs), EnvFilter::new("info"), None).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(relay = "wss://relay.test", "agent started");
            tracing::debug!("below the filter");
        });
        drop(guard); // flushes the background writer

        let files = log_files(&logs);
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("agent.") && name.ends_with(".log"),
            "{name}"
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("agent started"), "{text}");
        assert!(text.contains("relay=\"wss://relay.test\""), "{text}");
        assert!(!text.contains("below the filter"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no colour codes in a file: {text}"
        );
    }

    #[test]
    fn json_lines_go_to_the_file_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            json: true,
            ..file_options(dir.path())
        };
        let (subscriber, guard) = build(&options, EnvFilter::new("info"), None).unwrap();
        tracing::subscriber::with_default(subscriber, || tracing::warn!(n = 3, "three"));
        drop(guard);
        let text = std::fs::read_to_string(&log_files(dir.path())[0]).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["fields"]["message"], "three");
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn a_log_directory_that_cannot_be_created_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let Err(e) = build(
            &file_options(&file.join("logs")),
            EnvFilter::new("info"),
            None,
        ) else {
            panic!("a directory under a file was accepted");
        };
        let text = e.to_string();
        assert!(text.contains("not-a-dir"), "{text}");
        assert!(text.contains("cannot create the log directory"), "{text}");
    }

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
