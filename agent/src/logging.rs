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

mod event_log;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{InitError, RollingFileAppender, Rotation};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use self::event_log::{EVENT_LOG_FIELD, EVENT_LOG_REPEAT, Throttle, event_log_text};

/// Log files kept in the log directory (one a day: two weeks).
pub const KEEP_FILES: usize = 14;
/// Log files are named `agent.<date>.log`, the date (`YYYY-MM-DD`) in UTC.
pub const FILE_PREFIX: &str = "agent";
pub const FILE_SUFFIX: &str = "log";

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Logging to daily files in `dir` (also used by [`super::event_log`]'s tests).
    pub(super) fn file_options(dir: &Path) -> Options {
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
}
